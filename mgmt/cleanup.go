package mgmt

import "github.com/vdiskd/vdiskd/blockstore"

// cleanUpInterrupted removes what a crash left half done: VDIs a copy task
// was still filling, on_boot bases nobody names, and it gives reset VDIs
// that lost their base a new one.
func (s *Server) cleanUpInterrupted() {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.lookWorld()
	for id, v := range w.vols {
		a := v.attrs
		switch {
		case a.Building != "":
			s.log.Info("removing a VDI an interrupted copy left", "vdi", id, "task", a.Building)
			s.destroyBuilt(id)
		case a.BaseOf != "":
			owner, ok := w.vols[a.BaseOf]
			if !ok || owner.attrs.OnBootBase != id {
				s.log.Info("removing an unused on_boot base", "base", id, "of", a.BaseOf)
				s.dropBaseLocked(id)
			}
		case a.onBoot() == "reset" && v.info.Kind == blockstore.KindLive:
			if _, ok := w.vols[a.OnBootBase]; !ok {
				s.log.Info("taking a missing on_boot base", "vdi", id)
				if err := s.takeBaseLocked(id, a.clone()); err != nil {
					s.log.Warn("taking an on_boot base failed", "vdi", id, "err", err)
				}
			}
		}
	}
}
