"""Neural-network layers: constraints and shared blocks."""
