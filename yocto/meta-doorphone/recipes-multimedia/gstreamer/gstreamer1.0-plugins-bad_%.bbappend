# The plugins the door phone's media service needs (files/gst-elements.txt),
# in door phone builds only (the "doorphone" override, which the kas file adds
# to DISTROOVERRIDES): the camera as H.264 through Cisco's openh264, whose
# license flag the kas file accepts, and SRTP (libsrtp of meta-multimedia).
PACKAGECONFIG:append:doorphone = " openh264 srtp"
