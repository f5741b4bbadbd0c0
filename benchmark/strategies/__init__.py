"""Transfer strategies and evaluation protocols: one module per method (a class the strategy YAMLs name with
``_target_``); how a strategy is compared (role, baseline, reference, metric) is its YAML's ``meta`` block."""
