# Feature "mqtt": the MQTT transport and its client, for a board with a network (a profile's
# [firmware] features = ["mqtt"]); a board without one does not carry them.
package("spoolbus", files=["transport/mqtt.py", "transport/mqtt_client.py"], base_path="../../../runtime")
