"""Reading dental data: volumes with their geometry, dataset layouts, splits, synthesis."""
