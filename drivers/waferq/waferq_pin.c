// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq request pages: the caller's message pinned, put in an sg_table and
 * mapped for the MM2S channel, with no copy. waferq_sg.c plans the pages
 * (plain C, tested in user space); this file does what needs the kernel:
 * pin_user_pages_fast(), sg_alloc_table_from_pages_segment() (physically
 * contiguous pages merged, up to WAFERQ_DMA_SEG_MAX a segment) and the DMA
 * mapping, and refuses a message that needs more descriptors than the
 * engine has.
 */
#include <linux/device.h>
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/slab.h>

#include "waferq.h"
#include "waferq_sg.h"

/* Undoes waferq_map_user(): unmap, free the table, unpin. */
void waferq_unmap_user(struct waferq_user_sg *u)
{
	dma_unmap_sgtable(u->dma_dev, &u->sgt, DMA_TO_DEVICE, 0);
	sg_free_table(&u->sgt);
	unpin_user_pages(u->pages, u->nr_pages);
	kvfree(u->pages);
	put_device(u->dma_dev);
}

/* AXI DMA descriptors the mapped list takes: one per SEG_MAX bytes. */
static unsigned int waferq_descs_needed(struct sg_table *sgt)
{
	struct scatterlist *sg;
	unsigned int i, n = 0;

	for_each_sgtable_dma_sg(sgt, sg, i)
		n += DIV_ROUND_UP(sg_dma_len(sg), WAFERQ_DMA_SEG_MAX);
	return n;
}

/**
 * waferq_map_user() - pin a message in user memory and map it for MM2S
 * @wq: the device
 * @ubuf: the message, 32-bit aligned (waferq_sg_plan() refuses otherwise)
 * @len: its length in bytes
 * @u: filled in; waferq_unmap_user() undoes it after the transfer
 *
 * Return: 0; the plan's -EINVAL, -EMSGSIZE or -EFAULT; -EFAULT when the
 * pages cannot be pinned; -ENOMEM; a dma_map_sgtable() error; or -EMSGSIZE
 * when the mapped list needs more descriptors than WAFERQ_DMA_DESCS.
 */
int waferq_map_user(struct waferq_dev *wq, const void __user *ubuf, size_t len,
		    struct waferq_user_sg *u)
{
	struct waferq_sg_plan plan;
	unsigned int descs;
	const char *why;
	int pinned, ret;

	ret = waferq_sg_plan((unsigned long)ubuf, len, PAGE_SIZE, &plan, &why);
	if (ret) {
		dev_dbg(wq->dev, "cannot send a %zu-byte message from %p: %s\n",
			len, ubuf, why);
		return ret;
	}

	u->nr_pages = plan.nr_pages;
	u->pages = kvmalloc_array(u->nr_pages, sizeof(*u->pages), GFP_KERNEL);
	if (!u->pages)
		return -ENOMEM;

	/* The device only reads the message: no FOLL_WRITE. */
	pinned = pin_user_pages_fast(plan.page_addr, u->nr_pages, 0, u->pages);
	if (pinned != u->nr_pages) {
		ret = pinned < 0 ? pinned : -EFAULT;
		if (pinned > 0)
			unpin_user_pages(u->pages, pinned);
		goto err_free_pages;
	}

	/* Physically contiguous pages become one entry, up to SEG_MAX. */
	ret = sg_alloc_table_from_pages_segment(&u->sgt, u->pages, u->nr_pages,
						plan.offset, len,
						WAFERQ_DMA_SEG_MAX, GFP_KERNEL);
	if (ret)
		goto err_unpin;

	u->dma_dev = get_device(wq->dma_dev);
	ret = dma_map_sgtable(u->dma_dev, &u->sgt, DMA_TO_DEVICE, 0);
	if (ret) {
		dev_err(wq->dev, "cannot map a %zu-byte message for DMA: %d\n",
			len, ret);
		goto err_free_table;
	}

	descs = waferq_descs_needed(&u->sgt);
	if (descs > WAFERQ_DMA_DESCS) {
		dev_warn_ratelimited(wq->dev,
				     "a %zu-byte message spans %u memory segments; the DMA engine takes %u: use physically contiguous (huge page) memory\n",
				     len, descs, WAFERQ_DMA_DESCS);
		waferq_unmap_user(u);
		return -EMSGSIZE;
	}
	return 0;

err_free_table:
	put_device(u->dma_dev);
	sg_free_table(&u->sgt);
err_unpin:
	unpin_user_pages(u->pages, u->nr_pages);
err_free_pages:
	kvfree(u->pages);
	return ret;
}
