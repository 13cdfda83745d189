// SPDX-License-Identifier: GPL-2.0-only
/*
 * waferq: quantized-CNN accelerator in the Zynq-7000 PL, fed by an AXI DMA.
 *
 * Probe and remove: binds to WAFERQ_COMPATIBLE, takes the "tx" and "rx"
 * dmaengine channels and an optional reset GPIO, and registers the misc
 * device /dev/waferq<N>.
 */
#include <linux/gpio/consumer.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/mod_devicetable.h>
#include <linux/module.h>
#include <linux/platform_device.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <dt-bindings/waferq.h>

#include "waferq.h"

static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0444);
MODULE_PARM_DESC(timeout_ms, "Default timeout of every wait in ms (1..600000)");

static unsigned int max_reply_bytes = 65536;
module_param(max_reply_bytes, uint, 0444);
MODULE_PARM_DESC(max_reply_bytes,
		 "Size of the receive buffer, the longest reply in bytes");

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

static int waferq_probe(struct platform_device *pdev)
{
	struct device *dev = &pdev->dev;
	struct waferq_dev *wq;
	size_t rx_size;
	int ret;

	if (timeout_ms < WAFERQ_TIMEOUT_MIN_MS ||
	    timeout_ms > WAFERQ_TIMEOUT_MAX_MS) {
		dev_err(dev, "timeout_ms=%u is outside %u..%u\n", timeout_ms,
			WAFERQ_TIMEOUT_MIN_MS, WAFERQ_TIMEOUT_MAX_MS);
		return -EINVAL;
	}
	rx_size = max_reply_bytes;
	if (rx_size < 16 || rx_size % 4 || rx_size > SZ_4M) {
		dev_err(dev,
			"max_reply_bytes=%zu must be a multiple of 4 in 16..%u\n",
			rx_size, SZ_4M);
		return -EINVAL;
	}

	/* Not devm: an open file may outlive the binding (see waferq_put). */
	wq = kzalloc(sizeof(*wq), GFP_KERNEL);
	if (!wq)
		return -ENOMEM;
	kref_init(&wq->ref);
	mutex_init(&wq->lock);
	spin_lock_init(&wq->slock);
	init_waitqueue_head(&wq->waitq);
	init_completion(&wq->tx_done);
	init_completion(&wq->rx_done);
	wq->dev = dev;
	wq->timeout_ms = timeout_ms;
	wq->state = WAFERQ_IDLE;

	ret = devm_add_action_or_reset(dev, waferq_put_action, wq);
	if (ret)
		return ret;

	wq->reset_gpio = devm_gpiod_get_optional(dev, "reset", GPIOD_OUT_LOW);
	if (IS_ERR(wq->reset_gpio))
		return dev_err_probe(dev, PTR_ERR(wq->reset_gpio),
				     "cannot get the optional reset GPIO\n");

	wq->core = devm_platform_ioremap_resource_byname(pdev, "core");
	if (IS_ERR(wq->core))
		return dev_err_probe(dev, PTR_ERR(wq->core),
				     "cannot map the core's control registers (reg-names \"core\")\n");
	waferq_start_core(wq);

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

static int waferq_remove(struct platform_device *pdev)
{
	struct waferq_dev *wq = platform_get_drvdata(pdev);

	misc_deregister(&wq->misc);

	/*
	 * Open files keep the structure; mark it gone so that they stop
	 * touching the channels and the buffer, which devm releases next.
	 */
	mutex_lock(&wq->lock);
	wq->gone = true;
	waferq_dma_abort(wq);
	mutex_unlock(&wq->lock);
	wake_up_interruptible(&wq->waitq);

	ida_free(&waferq_ida, wq->id);
	return 0;
}

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
