# Set-up and everyday commands. Everything installs into a local virtualenv (.venv).
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: demo test install system-deps clean-venv

# Debian packages: espeak-ng (speech), and for the RTSP camera stand-in of the reconnect
# tests (tests/servers/rtsp_server.py, run by the system python3) PyGObject, GStreamer's RTSP
# server and its base/good/ugly plugins (x264enc is in -ugly). Installed when missing and we
# are root (CI, fresh machines here); otherwise a note: narration falls back to text and the
# RTSP test is skipped, naming these packages.
# chromium: the browser the page's test (tests/serve/test_page_browser.py) drives through Playwright (Playwright's own browser
# download cannot be fetched here).
RTSP_TEST_PACKAGES := python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly chromium
system-deps:
	@missing="$$(command -v espeak-ng >/dev/null 2>&1 || echo espeak-ng) \
	  $$(for p in $(RTSP_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done)"; \
	missing="$$(echo $$missing)"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "note: could not install $$missing; narration may be text only, the RTSP and browser tests skipped"; \
	  else echo "note: missing $$missing (sudo apt-get install $$missing); narration may be text only, the RTSP and browser tests skipped"; fi; \
	fi

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	# Pinned: on this machine torch==2.13.0 is a local CPU build; an unpinned torch pulls a multi-GB CUDA build.
	$(VENV)/bin/pip install --quiet torch==2.13.0
	$(VENV)/bin/pip install --quiet -e '.[export,calibrate,hf,dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Caption the shipped sample photos, answer a question about one, then narrate the shipped 10 s street clip: narration on
# stdout, speech as WAV files in demo-out/ (no camera or audio device needed).
demo: $(STAMP) system-deps
	$(VENV)/bin/edgevlm caption edgevlm/assets/samples
	$(VENV)/bin/edgevlm ask edgevlm/assets/samples/astronaut.jpg "is there a person?" --json
	$(VENV)/bin/edgevlm narrate edgevlm/assets/samples/street.mp4 --realtime --no-speak \
	  --audio-out demo-out/wav --events demo-out/events.jsonl --subtitles demo-out/street.vtt
	@echo "speech: $$(ls demo-out/wav | wc -l) WAV files in demo-out/wav"

test: $(STAMP) system-deps
	$(VENV)/bin/python -m pytest -q

clean-venv:
	rm -rf $(VENV)
