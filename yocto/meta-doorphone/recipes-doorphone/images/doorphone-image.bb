SUMMARY = "The door phone appliance"
DESCRIPTION = "A systemd image with the D-Bus system bus, every door phone \
               service and doorctl, and opkg pointed at the package feed, so \
               that each service can be upgraded on its own."
HOMEPAGE = "https://example.invalid/doorphone"
BUGTRACKER = "https://example.invalid/doorphone/issues"
SECTION = "images"
CVE_PRODUCT = ""
LICENSE = "MIT"

inherit core-image features_check

REQUIRED_DISTRO_FEATURES = "systemd"

IMAGE_FEATURES += "package-management"

IMAGE_INSTALL = "\
    packagegroup-core-boot \
    dbus \
    packagegroup-doorphone \
    ${CORE_IMAGE_EXTRA_INSTALL} \
"

# Written to /etc/opkg/base-feeds.conf, one feed per package architecture. The
# default is the build host as a qemu guest on a tap device sees it; a real
# device's build sets its own feed.
PACKAGE_FEED_URIS ??= "http://192.168.7.1:8000"
