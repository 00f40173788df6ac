"""The CNI protocol: what the plugin on each node forwards, and what it prints back."""
