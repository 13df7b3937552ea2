// Package config reads the backend's configuration (YAML file, then flags
// and environment on top) and knows hookctl's default paths.
package config
