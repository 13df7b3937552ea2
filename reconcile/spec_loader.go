package reconcile

import (
	"context"

	"hookctl.dev/hookctl/spec"
)

// SpecLoader returns a Loader that reads the hooks files and directories
// paths with spec.Load (paths checked). Validation problems come back as
// spec.Diagnostics, one line per problem.
func SpecLoader(paths []string, recursive bool) Loader {
	opts := spec.DefaultOptions()
	opts.Recursive = recursive
	return SpecLoaderWith(paths, opts)
}

// SpecLoaderWith is SpecLoader with every spec option.
func SpecLoaderWith(paths []string, opts spec.Options) Loader {
	return func(ctx context.Context) (Desired, error) {
		if err := ctx.Err(); err != nil {
			return Desired{}, err
		}
		s, err := spec.Load(paths, opts)
		if err != nil {
			return Desired{}, err
		}
		d := Desired{Hooks: s.Hooks, Sets: s.Sets, Files: s.Files}
		d.Revision = digest(d)
		return d, nil
	}
}
