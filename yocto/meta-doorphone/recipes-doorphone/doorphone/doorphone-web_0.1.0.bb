SUMMARY = "Door phone web service"
DESCRIPTION = "doorphone-web serves the door phone's HTTP API and web pages \
               over HTTPS: doors, calls, the camera's snapshot, the \
               configuration and live events. It owns no bus name: it is a \
               client of the other services, whose bus policies name its user."
SECTION = "network"

DOORPHONE_USER = "doorphone-web"

require doorphone.inc

SYSTEMD_SERVICE:${PN} = "${BPN}.service"

# The user as the sysusers file defines it (doorphone-users.inc).
USERADD_PARAM:${PN} = "${@d.getVarFlag('DOORPHONE_USERADD', '${DOORPHONE_USER}') or ''}"

do_install:append() {
    install -D -m 0644 ${S}/packaging/systemd/${BPN}.service ${D}${systemd_system_unitdir}/${BPN}.service
}
