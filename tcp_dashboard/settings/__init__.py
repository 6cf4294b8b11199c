"""Settings modules: `base` runs anywhere on embedded defaults, `production` hardens it."""
