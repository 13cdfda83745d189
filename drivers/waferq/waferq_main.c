// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq: quantized-CNN accelerator in the Zynq-7000 PL, fed by an AXI DMA.
 *
 * Probe and remove: binds to WAFERQ_COMPATIBLE, maps the PL glue's "csr"
 * block and the HLS core's "core" control, checks that the bitstream is the
 * one the device tree describes, takes the "tx" and "rx" dmaengine channels
 * and registers the misc device /dev/waferq<N>.
 *
 * The node must sit in an fpga-region whose overlay names the bitstream
 * (firmware-name): the region programs the PL before it adds the node, so
 * probe never touches GP0 before the PL is configured (an access to an
 * unconfigured PL hangs the bus).
 */
#include <linux/idr.h>
#include <linux/iopoll.h>
#include <linux/miscdevice.h>
#include <linux/mod_devicetable.h>
#include <linux/module.h>
#include <linux/of.h>
#include <linux/platform_device.h>
#include <linux/sizes.h>
#include <linux/slab.h>

#include "waferq.h"
#include "wq_csr_map.h"

static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "Default timeout of every wait in ms (1..600000)");

static unsigned int max_reply_bytes = 65536;
module_param(max_reply_bytes, uint, 0444);
MODULE_PARM_DESC(max_reply_bytes,
		 "Size of the receive buffer, the longest reply in bytes (at least the frame guard's longest frame)");

/* Hang guard for the soft reset (16 PL clock cycles on the board). */
#define WAFERQ_RESET_TIMEOUT_US	1000000
#define WAFERQ_GUARD_BUSY	(WQ_CSR_STATUS_MSG_OPEN_MASK | \
				 WQ_CSR_STATUS_CLOSING_MASK | \
				 WQ_CSR_STATUS_DROPPING_MASK)

static DEFINE_IDA(waferq_ida);

static void waferq_free(struct kref *ref)
{
	kfree(container_of(ref, struct waferq_dev, ref));
}

void waferq_put(struct waferq_dev *wq)
{
	kref_put(&wq->ref, waferq_free);
}

/* devm action: drop the platform device's reference on unbind. */
static void waferq_put_action(void *data)
{
	waferq_put(data);
}

/**
 * waferq_core_reset() - soft-reset the PL, restart the core, drain
 * @wq: the device, lock held, no transfer in flight
 *
 * CONTROL.SOFT_RESET resets the frame guard, the FIFOs and the HLS core,
 * which clears AP_START and AUTO_RESTART, so they are set again. Then it
 * waits until the guard has closed and passed on any message it held; such
 * a reply carries an old tag, and the receive drops it.
 *
 * Return: 0 or -ETIMEDOUT (the PL did not come out of reset).
 */
int waferq_core_reset(struct waferq_dev *wq)
{
	u32 val;
	int ret;

	writel(WQ_CSR_CONTROL_SOFT_RESET_MASK, wq->csr + WQ_CSR_CONTROL_ADDR);
	ret = readl_poll_timeout(wq->csr + WQ_CSR_CONTROL_ADDR, val,
				 !(val & WQ_CSR_CONTROL_SOFT_RESET_MASK), 50,
				 WAFERQ_RESET_TIMEOUT_US);
	if (ret) {
		dev_err(wq->dev, "the PL did not finish its soft reset (CONTROL %#x)\n",
			val);
		return ret;
	}
	writel(WAFERQ_AP_START | WAFERQ_AP_AUTO_RESTART,
	       wq->core + WAFERQ_AP_CTRL);
	ret = readl_poll_timeout(wq->csr + WQ_CSR_STATUS_ADDR, val,
				 !(val & WAFERQ_GUARD_BUSY), 50,
				 WAFERQ_RESET_TIMEOUT_US);
	if (ret)
		dev_err(wq->dev, "the frame guard stays busy after a reset (STATUS %#x)\n",
			val);
	return ret;
}

/* Is this the bitstream the device tree describes? */
static int waferq_check_pl(struct waferq_dev *wq)
{
	u32 version, hash, want;

	version = readl(wq->csr + WQ_CSR_VERSION_ADDR);
	if (version >> 16 != WQ_CSR_VERSION_RESET >> 16) {
		dev_err(wq->dev, "PL glue version %#010x, the driver needs major version %u (%#010x): wrong bitstream\n",
			version, WQ_CSR_VERSION_RESET >> 16,
			WQ_CSR_VERSION_RESET);
		return -ENODEV;
	}
	hash = readl(wq->csr + WQ_CSR_TOPOLOGY_HASH_ADDR);
	if (of_property_read_u32(wq->dev->of_node, WAFERQ_TOPOLOGY_PROP, &want)) {
		dev_warn(wq->dev, "no %s in the device tree: the bitstream's topology hash %#010x is not checked\n",
			 WAFERQ_TOPOLOGY_PROP, hash);
		return 0;
	}
	if (hash != want) {
		dev_err(wq->dev, "the bitstream's topology hash is %#010x, the device tree's %s is %#010x: wrong bitstream or overlay\n",
			hash, WAFERQ_TOPOLOGY_PROP, want);
		return -ENODEV;
	}
	return 0;
}

static int waferq_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct waferq_dev *wq;
	size_t rx_size, guard;
	int ret;

	if (timeout_ms < WAFERQ_TIMEOUT_MIN_MS ||
	    timeout_ms > WAFERQ_TIMEOUT_MAX_MS) {
		dev_err(dev, "timeout_ms=%u is outside %u..%u\n", timeout_ms,
			WAFERQ_TIMEOUT_MIN_MS, WAFERQ_TIMEOUT_MAX_MS);
		return -EINVAL;
	}

	/* Not devm: an open file may outlive the binding (see waferq_put). */
	wq = kzalloc(sizeof(*wq), GFP_KERNEL);
	if (!wq)
		return -ENOMEM;
	kref_init(&wq->ref);
	mutex_init(&wq->lock);
	mutex_init(&wq->io_lock);
	spin_lock_init(&wq->slock);
	init_waitqueue_head(&wq->waitq);
	wq->dev = dev;
	wq->timeout_ms = timeout_ms;
	wq->state = WAFERQ_IDLE;

	ret = devm_add_action_or_reset(dev, waferq_put_action, wq);
	if (ret)
		return ret;

	wq->csr = devm_platform_ioremap_resource_byname(pdev, "csr");
	if (IS_ERR(wq->csr))
		return dev_err_probe(dev, PTR_ERR(wq->csr),
				     "cannot map the PL glue's registers (reg-names \"csr\")\n");
	wq->core = devm_platform_ioremap_resource_byname(pdev, "core");
	if (IS_ERR(wq->core))
		return dev_err_probe(dev, PTR_ERR(wq->core),
				     "cannot map the core's control registers (reg-names \"core\")\n");
	ret = waferq_check_pl(wq);
	if (ret)
		return ret;

	/* The receive must hold the longest frame the guard lets through. */
	guard = ((size_t)readl(wq->csr + WQ_CSR_MAX_WORDS_ADDR) +
		 WQ_GUARD_TAIL_WORDS) * 4;
	rx_size = ALIGN(max_t(size_t, max_reply_bytes, guard), 4);
	if (rx_size > SZ_4M) {
		dev_err(dev, "max_reply_bytes=%u (guard frame %zu bytes) is over %u\n",
			max_reply_bytes, guard, SZ_4M);
		return -EINVAL;
	}
	if (rx_size != max_reply_bytes)
		dev_info(dev, "receive buffer raised from max_reply_bytes=%u to %zu bytes, the frame guard's longest frame\n",
			 max_reply_bytes, rx_size);

	ret = waferq_core_reset(wq);
	if (ret)
		return ret;

	ret = waferq_dma_init(wq, rx_size);
	if (ret)
		return ret;

	ret = ida_alloc(&waferq_ida, GFP_KERNEL);
	if (ret < 0)
		return ret;
	wq->id = ret;
	snprintf(wq->name, sizeof(wq->name), "waferq%d", wq->id);

	wq->misc.minor = MISC_DYNAMIC_MINOR;
	wq->misc.name = wq->name;
	wq->misc.fops = &waferq_fops;
	wq->misc.parent = dev;
	ret = misc_register(&wq->misc);
	if (ret) {
		dev_err(dev, "cannot register /dev/%s: %d\n", wq->name, ret);
		goto err_free_id;
	}

	platform_set_drvdata(pdev, wq);
	dev_info(dev, "/dev/%s ready: DMA %s -> core -> %s, replies up to %zu bytes, timeout %u ms\n",
		 wq->name, dma_chan_name(wq->tx_chan), dma_chan_name(wq->rx_chan),
		 wq->rx_size, wq->timeout_ms);
	return 0;

err_free_id:
	ida_free(&waferq_ida, wq->id);
	return ret;
}

static void waferq_do_remove(struct platform_device *pdev)
{
	struct waferq_dev *wq = platform_get_drvdata(pdev);

	misc_deregister(&wq->misc);

	/*
	 * Open files keep the structure; mark it gone so that they stop
	 * touching the channels and the buffer, which devm releases next.
	 * Waiters drop wq->lock while they wait, so this does not block.
	 */
	mutex_lock(&wq->lock);
	wq->gone = true;
	waferq_dma_abort(wq, WAFERQ_ABORT_NO_RESTORE);
	mutex_unlock(&wq->lock);
	wake_up_all(&wq->waitq);

	ida_free(&waferq_ida, wq->id);
}

#ifdef WAFERQ_VOID_REMOVE
static void waferq_remove(struct platform_device *pdev)
{
	waferq_do_remove(pdev);
}
#else
static int waferq_remove(struct platform_device *pdev)
{
	waferq_do_remove(pdev);
	return 0;
}
#endif

static const struct of_device_id waferq_of_match[] = {
	{ .compatible = WAFERQ_COMPATIBLE },
	{ /* sentinel */ }
};
MODULE_DEVICE_TABLE(of, waferq_of_match);

static struct platform_driver waferq_driver = {
	.probe = waferq_probe,
	.remove = waferq_remove,
	.driver = {
		.name = "waferq",
		.of_match_table = waferq_of_match,
	},
};
module_platform_driver(waferq_driver);

MODULE_DESCRIPTION("waferq quantized-CNN accelerator (AXI DMA message channel)");
MODULE_LICENSE("GPL");
