SUMMARY = "Door phone multicast pager"
DESCRIPTION = "doorphone-pager serves org.doorphone.Pager1 on the system bus: \
               it listens to the configured paging groups, decides by priority \
               and barge level which page plays, and has the media service \
               play it."

DOORPHONE_BUS_NAME = "org.doorphone.Pager1"
DOORPHONE_USER = "doorphone-pager"

require doorphone-service.inc
