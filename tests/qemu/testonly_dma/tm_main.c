// SPDX-License-Identifier: GPL-2.0-only
/*
 * TEST ONLY, never part of the product: a dmaengine provider for the QEMU
 * test of the waferq driver (tests/qemu/). It offers two slave channels,
 * MM2S (index 0, "tx") and S2MM (index 1, "rx"), that behave like the Xilinx
 * AXI DMA under xilinx_dma where a client can see it:
 *
 * - descriptors come from a fixed pool per channel (255 before v6.6, 512
 *   after); one descriptor moves at most 2^26 - 4 bytes;
 * - residue is reported per descriptor; a receive ends at the end of a reply
 *   (TLAST), short of the buffer;
 * - terminate_all resets the whole DMA: both channels stop and lose their
 *   interrupt enables, and only the terminated channel gets them back (as
 *   xilinx_dma_chan_reset() does); a channel without interrupts completes
 *   its transfer silently and then stays busy for good; allocating a
 *   channel's resources enables its interrupts (xilinx_dma_alloc_chan_resources);
 * - an MM2S error is DMA_TRANS_WRITE_FAILED, an S2MM error READ_FAILED.
 *
 * Behind the channels sits a small model of the core: QUERY, LOAD_WEIGHTS
 * (any length; the reply is the payload checksum), INFER on an 8x8x1 image
 * with 4 classes, ERROR for a bad header or checksum, and reply bytes that a
 * test loads through /dev/waferq_testonly. It serves only while the core's
 * AP_CTRL has AUTO_RESTART set. The "csr" and "core" register windows are
 * plain memory here (reg of this node, a no-map reserved region); a kernel
 * thread plays the PL: it carries out CONTROL.SOFT_RESET (clears AP_CTRL and
 * the queued replies, then clears the bit).
 *
 * Knobs for the tests, /sys/module/waferq_testonly_dma/parameters/: stall_tx
 * (MM2S waits), hold_reply (replies wait), drop (swallow N requests),
 * late_reply (answer the next request with the previous reply first),
 * bogus_residue (next receive reports a residue of the whole buffer),
 * fail_tx (next MM2S fails); counters resets and soft_resets; leak (loses
 * allocations on purpose, for the kmemleak check's own test).
 */
#include <linux/dma-mapping.h>
#include <linux/io.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/vmalloc.h>

#include "tm.h"

bool tm_stall_tx, tm_hold_reply, tm_late_reply, tm_bogus_residue, tm_fail_tx;
unsigned int tm_drop, tm_resets, tm_soft_resets, tm_topology = 0x1234abcd;
static unsigned int tm_version = WQ_CSR_VERSION_RESET;
struct tmodel *the_tm;

static int tm_kick_set(const char *val, const struct kernel_param *kp)
{
	int ret = param_set_bool(val, kp);

	if (!ret && the_tm)
		queue_work(system_unbound_wq, &the_tm->work);
	return ret;
}

static const struct kernel_param_ops tm_kick_ops = {
	.set = tm_kick_set,
	.get = param_get_bool,
};
module_param_cb(stall_tx, &tm_kick_ops, &tm_stall_tx, 0644);
module_param_cb(hold_reply, &tm_kick_ops, &tm_hold_reply, 0644);
module_param_named(late_reply, tm_late_reply, bool, 0644);
module_param_named(bogus_residue, tm_bogus_residue, bool, 0644);
module_param_named(fail_tx, tm_fail_tx, bool, 0644);
module_param_named(drop, tm_drop, uint, 0644);
module_param_named(resets, tm_resets, uint, 0444);
module_param_named(soft_resets, tm_soft_resets, uint, 0444);
module_param_named(topology, tm_topology, uint, 0444);
module_param_named(version, tm_version, uint, 0444);

/*
 * leak: writing N loses N small allocations on purpose, so that the kmemleak
 * run (tests/qemu/run.sh with KMEMLEAK=1 WQ_LEAK=1) shows it fails and names
 * this module. Several, not one: a stale copy of a pointer (on a kernel stack,
 * or in a live object that once held a freed object at the same address) hides
 * that one from a scan; and 3000 bytes, a size class little used here, for
 * fewer such copies.
 */
static noinline void tm_leak_on_purpose(unsigned int n)
{
	u8 *p;

	while (n--) {
		p = kmalloc(3000, GFP_KERNEL);
		if (p)
			memset(p, 0xa5, 3000);
	}
}

static int tm_leak_set(const char *val, const struct kernel_param *kp)
{
	unsigned int n;
	int ret = kstrtouint(val, 0, &n);

	if (!ret)
		tm_leak_on_purpose(min(n, 16u));
	return ret;
}

static const struct kernel_param_ops tm_leak_ops = {
	.set = tm_leak_set,
};
module_param_cb(leak, &tm_leak_ops, NULL, 0200);

static void tm_vfree(void *p)
{
	vfree(p);
}

static int tm_probe(struct platform_device *pdev)
{
	struct resource *res;
	struct tmodel *tm;
	int i, ret;

	tm = devm_kzalloc(&pdev->dev, sizeof(*tm), GFP_KERNEL);
	if (!tm)
		return -ENOMEM;
	tm->dev = &pdev->dev;
	spin_lock_init(&tm->lock);
	INIT_LIST_HEAD(&tm->replies);
	res = platform_get_resource(pdev, IORESOURCE_MEM, 0);
	if (!res)
		return -EINVAL;
	/* Shared with the waferq node, which requests the region. */
	tm->regs = devm_ioremap(&pdev->dev, res->start, resource_size(res));
	if (!tm->regs)
		return -ENOMEM;
	/*
	 * vmalloc: 4 MiB plus the devres header is an order-11 page block, which
	 * armmp (MAX_ORDER 12) has and the kmemleak kernel (11) has not.
	 */
	tm->msg = vmalloc(TM_MSG_MAX);
	if (!tm->msg)
		return -ENOMEM;
	ret = devm_add_action_or_reset(&pdev->dev, tm_vfree, tm->msg);
	if (ret)
		return ret;
	tm->big = alloc_pages(GFP_KERNEL | __GFP_ZERO, TM_BIG_ORDER);
	if (!tm->big)
		return -ENOMEM;
	split_page(tm->big, TM_BIG_ORDER);

	memset_io(tm->regs, 0, 0x100);
	writel(tm_version, tm->regs + WQ_CSR_VERSION_ADDR);
	writel(tm_topology, tm->regs + WQ_CSR_TOPOLOGY_HASH_ADDR);
	writel(WQ_GUARD_MAX_WORDS, tm->regs + WQ_CSR_MAX_WORDS_ADDR);
	writel(0, tm->regs + TM_CORE_OFF);

	tm_dma_init(tm);
	dma_set_max_seg_size(&pdev->dev, TM_SEG_MAX);
	ret = dma_async_device_register(&tm->dd);
	if (ret)
		goto err_pages;
	ret = of_dma_controller_register(pdev->dev.of_node, tm_xlate, tm);
	if (ret)
		goto err_dd;
	tm->misc.minor = MISC_DYNAMIC_MINOR;
	tm->misc.name = "waferq_testonly";
	tm->misc.fops = &tm_fops;
	ret = misc_register(&tm->misc);
	if (ret)
		goto err_of;
	tm->pl = kthread_run(tm_pl_thread, tm, "waferq_testonly_pl");
	if (IS_ERR(tm->pl)) {
		ret = PTR_ERR(tm->pl);
		goto err_misc;
	}
	the_tm = tm;
	platform_set_drvdata(pdev, tm);
	dev_info(&pdev->dev, "TEST-ONLY AXI DMA model: pool %u descriptors per channel\n",
		 TM_POOL);
	return 0;

err_misc:
	misc_deregister(&tm->misc);
err_of:
	of_dma_controller_free(pdev->dev.of_node);
err_dd:
	dma_async_device_unregister(&tm->dd);
err_pages:
	for (i = 0; i < (1 << TM_BIG_ORDER); i++)
		__free_page(tm->big + i);
	return ret;
}

static void tm_do_remove(struct platform_device *pdev)
{
	struct tmodel *tm = platform_get_drvdata(pdev);
	struct tm_reply *r, *n;
	int i;

	kthread_stop(tm->pl);
	misc_deregister(&tm->misc);
	of_dma_controller_free(pdev->dev.of_node);
	dma_async_device_unregister(&tm->dd);
	flush_work(&tm->work);
	the_tm = NULL;
	list_for_each_entry_safe(r, n, &tm->replies, node)
		kfree(r);
	kfree(tm->loaded);
	kfree(tm->last);
	for (i = 0; i < (1 << TM_BIG_ORDER); i++)
		__free_page(tm->big + i);
}

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 11, 0)
static void tm_remove(struct platform_device *pdev)
{
	tm_do_remove(pdev);
}
#else
static int tm_remove(struct platform_device *pdev)
{
	tm_do_remove(pdev);
	return 0;
}
#endif

static const struct of_device_id tm_of_match[] = {
	{ .compatible = "waferq-testonly,axi-dma-model" },
	{ }
};
MODULE_DEVICE_TABLE(of, tm_of_match);

static struct platform_driver tm_driver = {
	.probe = tm_probe,
	.remove = tm_remove,
	.driver = {
		.name = "waferq_testonly_dma",
		.of_match_table = tm_of_match,
	},
};
module_platform_driver(tm_driver);

MODULE_DESCRIPTION("TEST ONLY: AXI DMA and waferq core model for the QEMU test");
MODULE_LICENSE("GPL");
