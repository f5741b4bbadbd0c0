"""Sources: a timm architecture plus the weights it starts from. Each weights kind is a config object in its own
module (``weights`` none, ``hub``, ``file``, ``pretrain``), named by ``_target_`` in ``conf/source/<id>.yaml``."""
