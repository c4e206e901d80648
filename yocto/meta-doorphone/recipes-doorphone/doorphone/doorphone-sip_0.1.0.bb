SUMMARY = "Door phone SIP agent"
DESCRIPTION = "doorphone-sip serves org.doorphone.Sip1 on the system bus: \
               registration of the SIP accounts, the incoming call policy, \
               outgoing calls through the dial plan, and the call history."

DEPENDS += "sqlite3"

inherit pkgconfig

DOORPHONE_BUS_NAME = "org.doorphone.Sip1"
DOORPHONE_USER = "doorphone-sip"

require doorphone-service.inc

# Calls are objects of their own interface.
do_install:append() {
    install -D -m 0644 ${S}/dbus/interfaces/org.doorphone.Sip1.Call.xml \
        ${D}${datadir}/dbus-1/interfaces/org.doorphone.Sip1.Call.xml
}
