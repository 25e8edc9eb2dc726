"""Node names: the one rule every transport and broker carries (docs/protocol.md, section 7).

A module of its own, so that a node on a serial link does not import what only named transports need.
"""

_NAME_CHARS = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def check_name(part):
    """`part`, a bridge's or a device's name, if every transport and broker can carry it: 1-64 of
    A-Z a-z 0-9 - _ (docs/protocol.md, section 7). Otherwise ValueError naming it and the rule.

    One rule for all, because a bridge carries spool and serial devices onto MQTT under the same names.
    A leading '_' passes: it marks spoolbus's own nodes (_bridge), which are made with this check too.
    """
    if type(part) is not str or not 0 < len(part) <= 64 or part.strip(_NAME_CHARS):  # a bad character is left
        raise ValueError("%r is not a bridge or device name: use 1-64 of A-Z a-z 0-9 - _ ('.' splits "
                         "topic levels on RabbitMQ, '~' joins bridge~device in a spool, MQTT reserves / + #)"
                         % (part,))
    return part
