# The plugins the door phone's media service needs (files/gst-elements.txt),
# in door phone builds only (the "doorphone" override, which the kas file adds
# to DISTROOVERRIDES): ALSA capture and playback, and the Opus codec.
PACKAGECONFIG:append:doorphone = " alsa opus"
