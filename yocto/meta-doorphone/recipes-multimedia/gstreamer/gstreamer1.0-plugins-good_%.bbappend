# The plugins the door phone's media service needs (files/gst-elements.txt),
# in door phone builds only (the "doorphone" override, which the kas file adds
# to DISTROOVERRIDES): snapshots as JPEG, the camera through V4L2, and
# PulseAudio capture.
PACKAGECONFIG:append:doorphone = " jpeg pulseaudio v4l2"
