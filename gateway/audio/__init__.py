"""Why: a voice is a likeness, so audio is media the gateway must read as carefully as images
and video: `intake` turns untrusted audio bytes (and the soundtracks of videos) into the mono
16 kHz samples the voice models hear, refusing what it cannot read with clear 4xx errors."""
