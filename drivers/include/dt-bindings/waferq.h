/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Device tree facts of the waferq accelerator, shared by the driver and the
 * device tree overlay. No includes: dtc's preprocessor reads this file too.
 */
#ifndef _DT_BINDINGS_WAFERQ_H
#define _DT_BINDINGS_WAFERQ_H

/* The "compatible" string the platform driver binds to. */
#define WAFERQ_COMPATIBLE	"waferq,accel-1.0"

/* The "dma-names" of the two AXI DMA channels. */
#define WAFERQ_DMA_TX_NAME	"tx"	/* MM2S: memory -> accelerator RX FIFO */
#define WAFERQ_DMA_RX_NAME	"rx"	/* S2MM: accelerator TX FIFO -> memory */

#endif /* _DT_BINDINGS_WAFERQ_H */
