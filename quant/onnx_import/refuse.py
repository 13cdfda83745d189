"""The one error the importer raises: a sentence for the user, never a traceback."""


class ImportRefused(ValueError):
    """The model cannot be mapped or did not verify; str() is one sentence."""


def node_refused(node, why: str) -> ImportRefused:
    return ImportRefused(f"node {node.name!r} ({node.op_type}): {why}")
