SUMMARY = "The door phone's services and its command-line tool"
DESCRIPTION = "Every package of the door phone appliance; each is upgraded on \
               its own from the package feed."
HOMEPAGE = "https://example.invalid/doorphone"
BUGTRACKER = "https://example.invalid/doorphone/issues"
SECTION = "base"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "\
    doorctl \
    doorphone-config \
    doorphone-media \
    doorphone-pager \
    doorphone-relay \
    doorphone-sip \
    doorphone-web \
"
