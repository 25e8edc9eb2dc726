"""A staged fleet rollout over the bus: waves of OTA deploys, an abort rule, a rollback of the failed wave."""
