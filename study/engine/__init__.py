"""Layer 5, engine: grids become cells, cells run (locally or on Ray) into the results store, exactly once."""
