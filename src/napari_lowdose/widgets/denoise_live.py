"""The live scope of the 'Denoise' dock: the frame the slider moves to is denoised.

Every frame the frame slider moves to is denoised if it is not done yet with the
same settings; a request made while a frame is running replaces any earlier
waiting one, so requests never pile up. The contrast of the output layer follows
the frame shown (in any scope) until the user sets their own.
"""

from ..io.layers import LOWDOSE_KEY
from .denoise_output import DENOISED_KEY, existing_output, follow_contrast, same_settings, stack

__all__ = ["LiveScope"]


class LiveScope:
    """Mixin of :class:`~.denoise.DenoiseWidget`: the live scope and the frame slider.

    Uses the dock's ``_run``, ``_live``, ``_live_pending``, ``_worker``, ``_state``,
    ``scope``, ``status``, ``_request()``, ``_start()`` and ``_update_enabled()``.
    """

    def _on_scope_changed(self, _value=None):
        if self.scope.value == "live":
            self._start_live()
        elif self._live:
            self._stop_live("live mode off")

    def _start_live(self):
        request = self._request()
        if request is None:  # already notified; do not keep failing on every step
            self.scope.value = "current"
            return
        self._live, self._live_pending = True, None
        self.status.value = "live: the frame shown is denoised"
        self._update_enabled()
        self._live_frame(request)

    def _stop_live(self, message: str):
        self._live, self._live_pending = False, None
        self.status.value = message
        if self.scope.value == "live":
            self.scope.value = "current"
        self._update_enabled()

    def _on_step(self, _event=None):
        """Frame slider moved: contrast follows the frame; in live mode, denoise it."""
        run = self._run
        if run is not None and not self._state.closed and run.layer in self._viewer.layers:
            shown = self.current_frame(run.layer)
            if shown in run.done:
                follow_contrast(run, stack(run)[shown])
        if not self._live or self._state.closed:
            return
        if self.layer is None:
            self._stop_live("live mode stopped: no image layer")
            return
        index = self.current_frame()
        if self._worker is not None:
            self._live_pending = index  # only the latest request is kept
            return
        request = self._request()
        if request is None:
            self._stop_live("live mode stopped")
            return
        self._live_frame(request)

    def _live_frame(self, request):
        """Denoise the shown frame of a request unless its output already has it."""
        index = request.indices[0]
        out = existing_output(self._viewer, request)
        if out is not None:
            done = (out.metadata.get(LOWDOSE_KEY) or {}).get(DENOISED_KEY) or {}
            if index in set(done.get("frames_done", [])) and same_settings(done, request):
                self.status.value = f"live: frame {index} already denoised"
                return
        self._start(request)

    def _next_live(self):
        """After a live frame: run the latest request made meanwhile, if any."""
        if not self._live or self._live_pending is None or self._worker is not None:
            return
        self._live_pending = None
        self._on_step()
