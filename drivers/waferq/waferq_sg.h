/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Scatter-gather planning for a request in user memory.
 *
 * Pure arithmetic on an address, a length and the page size: no kernel API,
 * so waferq_sg.c compiles in user space and the tests check it against a
 * Python model over random and edge-case buffers. waferq_dma.c pins the
 * planned pages; the kernel's sg_alloc_table_from_pages_segment() builds the
 * list from them, merging physically adjacent pages.
 */
#ifndef _WAFERQ_SG_H
#define _WAFERQ_SG_H

/* The errno shim, u32 and WAFERQ_MSG_MAX_BYTES. */
#include "waferq_msg.h"

/*
 * The AXI DMA is built without the data realignment engine, so every
 * segment must start on a 32-bit word.
 */
#define WAFERQ_SG_ALIGN		4

/**
 * struct waferq_sg_plan - the pages a user buffer spans
 * @page_addr: user address of the first page
 * @offset: offset of the buffer in the first page
 * @nr_pages: pages to pin
 * @len: buffer length in bytes
 * @page_size: the page size the plan was made for
 */
struct waferq_sg_plan {
	unsigned long page_addr;
	unsigned long offset;
	unsigned int nr_pages;
	size_t len;
	unsigned long page_size;
};

int waferq_sg_plan(unsigned long addr, size_t len, unsigned long page_size,
		   struct waferq_sg_plan *plan, const char **why);
int waferq_sg_segment(const struct waferq_sg_plan *plan, unsigned int index,
		      unsigned long *offset, unsigned long *len);

#endif /* _WAFERQ_SG_H */
