"""The reference app's test suite (a package, so ``stacks`` resolves to the app's own stacks)."""
