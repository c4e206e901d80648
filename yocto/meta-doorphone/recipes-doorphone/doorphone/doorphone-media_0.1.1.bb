SUMMARY = "Door phone media service"
DESCRIPTION = "doorphone-media serves org.doorphone.Media1 on the system bus: \
               SDP offer/answer, RTP audio and video with GStreamer, DTMF, \
               snapshots and the speaker."

DEPENDS += "gstreamer1.0 gstreamer1.0-plugins-bad gstreamer1.0-plugins-base spandsp"

inherit pkgconfig

DOORPHONE_BUS_NAME = "org.doorphone.Media1"
DOORPHONE_USER = "doorphone-media"

require doorphone-service.inc

# Sessions are objects of their own interface.
do_install:append() {
    install -D -m 0644 ${S}/dbus/interfaces/org.doorphone.Media1.Session.xml \
        ${D}${datadir}/dbus-1/interfaces/org.doorphone.Media1.Session.xml
}

# The packages of the GStreamer elements the service creates, as
# files/gst-elements.txt of this layer lists them (no gst-libav: G.722 is
# encoded through spandsp in the service itself); gstreamer1.0 has the core
# elements. The options they need are set by
# recipes-multimedia/gstreamer/*.bbappend.
DOORPHONE_GST_PACKAGES = "\
    gstreamer1.0 \
    gstreamer1.0-plugins-bad-openh264 \
    gstreamer1.0-plugins-bad-srtp \
    gstreamer1.0-plugins-base-alsa \
    gstreamer1.0-plugins-base-app \
    gstreamer1.0-plugins-base-audioconvert \
    gstreamer1.0-plugins-base-audiomixer \
    gstreamer1.0-plugins-base-audioresample \
    gstreamer1.0-plugins-base-audiotestsrc \
    gstreamer1.0-plugins-base-opus \
    gstreamer1.0-plugins-base-videoconvertscale \
    gstreamer1.0-plugins-base-videorate \
    gstreamer1.0-plugins-base-videotestsrc \
    gstreamer1.0-plugins-good-alaw \
    gstreamer1.0-plugins-good-autodetect \
    gstreamer1.0-plugins-good-dtmf \
    gstreamer1.0-plugins-good-jpeg \
    gstreamer1.0-plugins-good-mulaw \
    gstreamer1.0-plugins-good-pulseaudio \
    gstreamer1.0-plugins-good-rtp \
    gstreamer1.0-plugins-good-rtpmanager \
    gstreamer1.0-plugins-good-udp \
    gstreamer1.0-plugins-good-video4linux2 \
    gstreamer1.0-plugins-good-wavenc \
"

# Libraries the service loads with dlopen, which no shared-library dependency
# names: spandsp, by the first G.722 call (it links libtiff, which a door needs
# for nothing else).
DOORPHONE_DLOPENED = "spandsp"

RDEPENDS:${PN} += "${DOORPHONE_DLOPENED} ${DOORPHONE_GST_PACKAGES}"
