"""Hidden-danger work orders (隐患整改, CONTRACT §11): conditions, store, routes and the sweep."""
