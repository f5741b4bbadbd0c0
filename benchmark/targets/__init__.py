"""Targets: datasets the source is transferred to. One module per family, one YAML per dataset in conf/target/."""
