// SPDX-License-Identifier: GPL-2.0-only
/*
 * Scatter-gather planning for a request in user memory; see waferq_sg.h.
 *
 * The plan checks the buffer and gives the span of pages to pin.
 * waferq_sg_segment() is the part of page i the buffer covers; the driver
 * hands the pinned pages to sg_alloc_table_from_pages_segment(), which makes
 * the same segments and merges physically adjacent ones (waferq_dma.c).
 */
#include "waferq_sg.h"

/**
 * waferq_sg_plan() - check a user buffer and work out the pages it spans
 * @addr: user address of the message
 * @len: its length in bytes
 * @page_size: PAGE_SIZE, a power of two
 * @plan: filled in on success
 * @why: set to the reason on error
 *
 * The size comes first, as in waferq_msg_check_size().
 *
 * Return: 0, -EINVAL (empty, unaligned, odd length, bad page size),
 * -EMSGSIZE (longer than the core accepts) or -EFAULT (wraps the address
 * space).
 */
int waferq_sg_plan(unsigned long addr, size_t len, unsigned long page_size,
		   struct waferq_sg_plan *plan, const char **why)
{
	unsigned long last;

	if (page_size < WAFERQ_SG_ALIGN || (page_size & (page_size - 1))) {
		*why = "page size is not a power of two of at least a word";
		return -EINVAL;
	}
	if (!len) {
		*why = "empty buffer";
		return -EINVAL;
	}
	if (len > WAFERQ_MSG_MAX_BYTES) {
		*why = "buffer is longer than the core accepts";
		return -EMSGSIZE;
	}
	if (addr % WAFERQ_SG_ALIGN) {
		*why = "buffer is not 32-bit aligned (the DMA has no realignment engine)";
		return -EINVAL;
	}
	if (len % WAFERQ_SG_ALIGN) {
		*why = "length is not a whole number of 32-bit words";
		return -EINVAL;
	}
	/* len is bounded above, so len - 1 fits and only the sum can wrap. */
	last = addr + (len - 1);
	if (last < addr) {
		*why = "buffer wraps around the address space";
		return -EFAULT;
	}

	plan->page_addr = addr & ~(page_size - 1);
	plan->offset = addr - plan->page_addr;
	plan->nr_pages = (last - plan->page_addr) / page_size + 1;
	plan->len = len;
	plan->page_size = page_size;
	return 0;
}

/**
 * waferq_sg_segment() - the part of one page that sg entry @index covers
 * @plan: a plan made by waferq_sg_plan()
 * @index: entry number, below @plan->nr_pages
 * @offset: set to the offset in the page
 * @len: set to the length in bytes
 *
 * Return: 0, or -EINVAL for an index past the plan.
 */
int waferq_sg_segment(const struct waferq_sg_plan *plan, unsigned int index,
		      unsigned long *offset, unsigned long *len)
{
	/* Bytes of the buffer before the start of page @index. */
	unsigned long before;

	if (index >= plan->nr_pages)
		return -EINVAL;
	if (!index) {
		*offset = plan->offset;
		before = 0;
	} else {
		*offset = 0;
		before = index * plan->page_size - plan->offset;
	}
	*len = plan->len - before;
	if (*len > plan->page_size - *offset)
		*len = plan->page_size - *offset;
	return 0;
}
