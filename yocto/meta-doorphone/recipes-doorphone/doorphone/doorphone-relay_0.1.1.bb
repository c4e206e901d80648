SUMMARY = "Door phone relay service"
DESCRIPTION = "doorphone-relay serves org.doorphone.Relay1 on the system bus: \
               the door relays on GPIO lines, opened on request for their \
               hold time."

DOORPHONE_BUS_NAME = "org.doorphone.Relay1"
DOORPHONE_USER = "doorphone-relay"

require doorphone-service.inc
