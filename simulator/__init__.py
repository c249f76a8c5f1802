"""Fleet rollouts over modelled links, and emulation with real agents."""
