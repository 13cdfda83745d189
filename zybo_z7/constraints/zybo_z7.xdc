# Zybo Z7-20 constraints of the waferq design.
#
# Deliberately (almost) empty: the design uses no PL package pin. Every external signal
# (DDR, UART1, ENET0, SD0, USB0, QSPI) goes through the PS7's fixed MIO/DDR pins, which
# the processing_system7 IP constrains itself, and the only clock is FCLK_CLK0, whose
# period the PS7 IP also constrains (from PCW_FPGA0_PERIPHERAL_FREQMHZ, board.toml).
# Constraining unused PL pins would only tie the design to a pinout it does not use.

# Bitstream options: compress (faster JTAG/FPGA-manager loads); the design reads no config pins.
set_property BITSTREAM.GENERAL.COMPRESS TRUE [current_design]
