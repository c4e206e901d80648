SUMMARY = "Command-line tool to configure and inspect the door phone"
DESCRIPTION = "doorctl talks to the door phone's services over the system bus: \
               configuration, phone book, dial plan, buttons, calls, doors and \
               paging."
SECTION = "console/network"

require doorphone.inc
