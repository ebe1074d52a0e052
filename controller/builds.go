package controller

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/pierpaas/pier"
)

func (s *Server) listBuilds(w http.ResponseWriter, r *http.Request) (any, error) {
	p, err := page(r)
	if err != nil {
		return nil, err
	}
	builds, next, err := s.store.ListBuilds(r.Context(), appOf(r).Name, p)
	for i := range builds {
		builds[i].Log = "" // logs are for the single-build answer
	}
	return list(builds, next), err
}

// getBuild answers one build with its log: {id} is a build ID or "latest".
func (s *Server) getBuild(w http.ResponseWriter, r *http.Request) (any, error) {
	app := appOf(r).Name
	raw := chi.URLParam(r, "id")
	if raw == "latest" {
		builds, _, err := s.store.ListBuilds(r.Context(), app, pier.Page{Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(builds) == 0 {
			return nil, pier.Errorf(pier.ENOTFOUND, "app %q has no builds yet: git push first (git push pier main)", app)
		}
		return s.store.FindBuild(r.Context(), app, builds[0].ID)
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		if len(raw) > 40 {
			raw = raw[:40] + "…"
		}
		return nil, pier.Errorf(pier.EINVALID, "build ID %q is invalid: use a number from `pier builds`, or latest", raw)
	}
	return s.store.FindBuild(r.Context(), app, id)
}

// buildRequest deploys an existing image (`pier builds:create`).
type buildRequest struct {
	Image    string `json:"image"`              // [registry[:port]/]path[:tag][@sha256:digest]
	Procfile string `json:"procfile,omitempty"` // "web: ./server\nworker: ./w"; absent: web runs the image's entrypoint
}

// createBuild deploys an existing image as Deis' builds:create does: a build
// of strategy "image" and a release of it, through the same path as a git
// push (Reconciler.Deploy), so that the release is written only once its
// processes serve.
func (s *Server) createBuild(w http.ResponseWriter, r *http.Request) (any, error) {
	var req buildRequest
	if err := decode(w, r, &req); err != nil {
		return nil, err
	}
	if err := pier.ValidateImage(req.Image); err != nil {
		return nil, err
	}
	if err := s.checkImageOwner(appOf(r).Name, req.Image); err != nil {
		return nil, err
	}
	types := map[string]string{"web": ""}
	if req.Procfile != "" {
		var err error
		if types, err = pier.ParseProcfile(req.Procfile); err != nil {
			return nil, err
		}
	}
	if s.rec == nil {
		return nil, pier.Errorf(pier.EUNAVAILABLE, "this controller runs no scheduler, so it cannot deploy: run `pierd all`")
	}
	// Detached, as converge is: a deploy is not left half done.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), convergeTimeout)
	defer cancel()
	return s.rec.Deploy(ctx, imageStrategy{image: req.Image, types: types}, DeployRequest{
		App: appOf(r).Name, User: userOf(r).Username,
	})
}

// checkImageOwner refuses ref when it is in Pier's own registry but not in
// app's repository there: the scheduler would pull another app's image
// (its code, whatever its build baked in) with Pier's credentials. Images
// of other registries are pulled without them (Registry.Auth).
func (s *Server) checkImageOwner(app, ref string) error {
	if s.imageRepo == nil {
		return nil
	}
	repo := s.imageRepo(app)
	host, _, _ := strings.Cut(repo, "/")
	if !strings.HasPrefix(ref, host+"/") {
		return nil
	}
	if rest, ok := strings.CutPrefix(ref, repo); ok && (rest == "" || rest[0] == ':' || rest[0] == '@') {
		return nil
	}
	return pier.Errorf(pier.EFORBIDDEN, "image %s is in Pier's registry but not in %s's repository %s: an app deploys only its own images from Pier's registry; deploy %s:TAG, or an image of another registry", ref, app, repo, repo)
}

// imageStrategy is the "build" of an existing image: it builds nothing and
// answers with the image and the process types given.
type imageStrategy struct {
	image string
	types map[string]string
}

func (imageStrategy) Name() string { return pier.StrategyImage }

func (s imageStrategy) Build(_ context.Context, req pier.BuildRequest) (*pier.BuildResult, error) {
	fmt.Fprintf(req.Log, "-----> Using image %s\n", s.image)
	types := make([]string, 0, len(s.types))
	for t, cmd := range s.types {
		if cmd == "" {
			t += " (the image's entrypoint)"
		}
		types = append(types, t)
	}
	sort.Strings(types)
	fmt.Fprintf(req.Log, "       Process types: %s\n", strings.Join(types, ", "))
	return &pier.BuildResult{Image: s.image, ProcessTypes: s.types}, nil
}
