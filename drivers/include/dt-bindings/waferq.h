/* SPDX-License-Identifier: (GPL-2.0-only OR MIT) */
/*
 * Device tree constants of the waferq accelerator binding
 * (bindings/waferq,accel.yaml): numbers only, for .dts files and the driver.
 */
#ifndef _DT_BINDINGS_WAFERQ_H
#define _DT_BINDINGS_WAFERQ_H

/* The AXI DMA channel specifiers in "dmas" (#dma-cells = <1>). */
#define WAFERQ_AXI_DMA_MM2S	0	/* memory -> accelerator: "tx" */
#define WAFERQ_AXI_DMA_S2MM	1	/* accelerator -> memory: "rx" */

#endif /* _DT_BINDINGS_WAFERQ_H */
