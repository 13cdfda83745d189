"""Protocol definitions shared by every stage (single source of truth).

- ``protocol.stream``: the accelerator's AXI-Stream message format (RX/TX FIFOs).
- ``protocol.wire``: the Ethernet (TCP) framing between the host and the board service.
- ``protocol.codegen``: writes the C headers from these definitions.

This package imports numpy only, so that the STM32MP1 host can use it without torch.
"""
