"""Hardware ports and their adapters, real and simulated.

Two ports so far, each tiny:

- a scan input yields payloads: ``async for payload in source.payloads()``, with
  ``name`` (recorded as the scan's device) and ``aclose()``;
- signals show decisions: ``signals.show(decision)`` (never blocks) and ``aclose()``.

Adapters here: ``StdinInput`` (one payload per line), ``ImageFolderInput`` (every new
image file in a folder is a camera frame, decoded by zxing-cpp), ``ConsoleSignals``
(one coloured line per decision) and ``GpioSignals`` (LEDs and a buzzer through
gpiozero; tests use its mock pin factory). Hardware libraries are imported inside the
adapter that needs them.
"""
