"""What every `pdefm` command shares besides its own work: setting up the process (threads, memory reuse), checking
output paths before any work, printing `--help`, and telling an unreachable Hub apart from other errors."""
