SUMMARY = "Door phone configuration service"
DESCRIPTION = "doorphone-config serves org.doorphone.Config1 on the system bus: \
               the configuration database in SQLite, its validation and its \
               change signals."

DEPENDS += "sqlite3"

inherit pkgconfig

DOORPHONE_BUS_NAME = "org.doorphone.Config1"
DOORPHONE_USER = "doorphone-config"

require doorphone-service.inc
