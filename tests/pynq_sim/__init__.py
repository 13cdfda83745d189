"""Register-level models of the waferq PL (AXI DMA 7.1, the HLS core's ap_ctrl_hs block,
the CSR soft reset, DDR) under pynq's own EmbeddedDevice, for tests/test_pynq_backend*.py."""
