"""Pure logic: ticket payloads, manifests, the decision. No I/O, no asyncio."""
