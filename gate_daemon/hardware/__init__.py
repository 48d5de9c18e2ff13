"""Hardware ports and their adapters, real and simulated.

The ports are in ``ports.py`` (scan input, decoder, signals, relay, contact), each one
verb and a lifecycle. The real adapters import their hardware library inside the
adapter, so a laptop or CI never imports picamera2, evdev, pyserial or lgpio:

- inputs: ``PicameraInput`` (the Pi camera, frames decoded on its own thread),
  ``HidScannerInput`` (a USB keyboard-wedge scanner through evdev), ``SerialScannerInput``
  (pyserial); twins ``StdinInput`` and ``ImageFolderInput`` (image files as frames);
- decoders: ``ZxingDecoder`` and ``ZbarDecoder``, chosen by ``make_decoder``;
- outputs: ``GpioSignals`` (LEDs, plain or tonal buzzer), ``GpioRelay`` and ``GpioContact``
  (turnstile relay, passage sensor, button) through gpiozero; twins ``ConsoleSignals``
  and gpiozero's mock pins; ``safe_state`` drives the outputs off after the daemon stops.

``factory.py`` builds the adapters a gate's config names, with ``NullSignals`` for a gate
that shows nothing.

docs/HARDWARE.md has the table of ports, adapters and twins and how each is tested;
hw/ has the wiring.
"""
