package kvol

import (
	"fmt"
	"slices"
	"time"

	"github.com/vdiskd/vdiskd/mgmt/fault"
	"github.com/vdiskd/vdiskd/mgmt/kv"
	"github.com/vdiskd/vdiskd/mgmt/kvol/kvolapi"
)

// Job kinds.
const (
	kindCreate   = "create"
	kindRecovery = "recovery"
)

// job is a stored job row: what create or recovery asked, what was
// decided when it was queued (the replica it is made from), and how far
// it got. Rows stay; a row left PENDING or RUNNING by a stop runs again at
// the next start.
type job struct {
	Rowkey    int64     `json:"rowkey"`
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	ResultMsg string    `json:"result_msg,omitempty"`
	Queued    time.Time `json:"queued"`
	Start     time.Time `json:"start,omitzero"`
	End       time.Time `json:"end,omitzero"`
	By        string    `json:"by"`

	// What is asked.
	OrgZone     string `json:"org_zone"`
	OrgVPool    string `json:"org_vpool"`
	OrgSnapshot string `json:"org_snapshot,omitempty"` // create
	OrgVolume   string `json:"org_volume,omitempty"`   // recovery
	DstZone     string `json:"dst_zone"`
	DstPool     string `json:"dst_pool"` // guid here
	Tenant      string `json:"tenant"`
	Bootable    bool   `json:"bootable,omitempty"`

	// The replica snapshot it is made from, and the zone holding it.
	SrcZone     string `json:"src_zone"`
	SrcSnapshot string `json:"src_snapshot"`
	SrcVPool    string `json:"src_vpool"` // guid there
	Name        string `json:"name"`      // the new volume's name_label
	SrcSVM      string `json:"src_svm,omitempty"`
	DstSVM      string `json:"dst_svm,omitempty"`

	NewVolume string `json:"new_volume,omitempty"`
}

const (
	jobPrefix  = "kvol/job/"
	keyNextJob = "kvol-next-rowkey"
)

func jobKey(rowkey int64) string { return fmt.Sprintf("%s%016d", jobPrefix, rowkey) }

// row is j as createlist and recoverylist show it.
func (j job) row() kvolapi.Job {
	at := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(kvolapi.TimeLayout)
	}
	return kvolapi.Job{Rowkey: j.Rowkey, Status: j.Status, ResultMsg: j.ResultMsg, CreateStart: at(j.Start),
		CreateEnd: at(j.End), OrgZoneID: j.OrgZone, OrgSnapshotID: j.OrgSnapshot, OrgVolumeID: j.OrgVolume,
		SrcZoneID: j.SrcZone, SrcSVMName: j.SrcSVM, DstZoneID: j.DstZone, DstSVMName: j.DstSVM, NewVolumeID: j.NewVolume}
}

// queue stores a new job under the next rowkey (never handed out twice)
// and starts it.
func (s *Service) queue(j job) (int64, error) {
	s.mu.Lock()
	j.Rowkey, j.Status, j.Queued = s.next, kvolapi.StatusPending, s.opts.Now().UTC()
	b := s.opts.DB.NewBatch()
	b.Put(jobKey(j.Rowkey), j)
	b.Put(keyNextJob, j.Rowkey+1)
	if err := b.Commit(); err != nil {
		s.mu.Unlock()
		return 0, fault.Internalf(nil, "kvol: queueing a job: %v", err)
	}
	s.next++
	s.mu.Unlock()
	s.log.Info("kvol job queued", "rowkey", j.Rowkey, "kind", j.Kind, "org_zone", j.OrgZone,
		"org_snapshot", j.OrgSnapshot, "org_volume", j.OrgVolume, "src_zone", j.SrcZone, "src_snapshot", j.SrcSnapshot,
		"dst_pool", j.DstPool, "by", j.By)
	s.start(j)
	return j.Rowkey, nil
}

// save stores j's progress.
func (s *Service) save(j job) error {
	if err := s.opts.DB.Put(jobKey(j.Rowkey), j); err != nil {
		return fmt.Errorf("kvol: storing job %d: %w", j.Rowkey, err)
	}
	return nil
}

// jobs answers createlist or recoverylist: the job of kind with a.Rowkey,
// or the latest a.Count() of that kind, newest first.
func (s *Service) jobs(kind string, a *kvolapi.JobListArgs) (kvolapi.Jobs, error) {
	out := kvolapi.Jobs{Clist: []kvolapi.Job{}}
	if a.Rowkey > 0 {
		var j job
		ok, err := s.opts.DB.Get(jobKey(a.Rowkey), &j)
		if err != nil {
			return out, fault.Internalf(nil, "kvol: reading job %d: %v", a.Rowkey, err)
		}
		if ok && j.Kind == kind {
			out.Clist = append(out.Clist, j.row())
		}
		return out, nil
	}
	var all []job
	err := kv.ScanJSON(s.opts.DB, jobPrefix, func(_ string, j *job) error {
		if j.Kind == kind {
			all = append(all, *j)
		}
		return nil
	})
	if err != nil {
		return out, fault.Internalf(nil, "kvol: reading the jobs: %v", err)
	}
	slices.Reverse(all)
	for _, j := range all[:min(len(all), a.Count())] {
		out.Clist = append(out.Clist, j.row())
	}
	return out, nil
}

// resume starts every job a stop left pending or running.
func (s *Service) resume() error {
	var open []job
	err := kv.ScanJSON(s.opts.DB, jobPrefix, func(_ string, j *job) error {
		if j.Status == kvolapi.StatusPending || j.Status == kvolapi.StatusRunning {
			open = append(open, *j)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kvol: reading the jobs: %w", err)
	}
	for _, j := range open {
		s.log.Info("kvol job resumed", "rowkey", j.Rowkey, "status", j.Status)
		s.start(j)
	}
	return nil
}

// start runs j in the background, at most Workers at once.
func (s *Service) start(j job) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.slots <- struct{}{}:
		case <-s.ctx.Done():
			return // still PENDING: the next start runs it
		}
		defer func() { <-s.slots }()
		s.run(j)
	}()
}

// run makes j's volume and records how it ended. A job the daemon's stop
// cut stays RUNNING, to be run again.
func (s *Service) run(j job) {
	j.Status = kvolapi.StatusRunning
	if j.Start.IsZero() {
		j.Start = s.opts.Now().UTC()
	}
	if err := s.save(j); err != nil {
		s.log.Error("kvol job", "rowkey", j.Rowkey, "err", err)
		return
	}
	id, err := s.build(s.ctx, &j)
	if err != nil && s.ctx.Err() != nil {
		s.log.Info("kvol job cut by the stop; it runs again at the next start", "rowkey", j.Rowkey)
		return
	}
	j.End = s.opts.Now().UTC()
	if err != nil {
		j.Status, j.ResultMsg = kvolapi.StatusFailed, err.Error()
		s.log.Warn("kvol job failed", "rowkey", j.Rowkey, "err", err)
		if j.NewVolume != "" {
			if derr := s.vols.Destroy(j.NewVolume, "kvol"); derr != nil {
				s.log.Warn("kvol: dropping a failed job's volume", "rowkey", j.Rowkey, "vdi", j.NewVolume, "err", derr)
			}
			j.NewVolume = ""
		}
	} else {
		j.Status, j.ResultMsg, j.NewVolume = kvolapi.StatusSuccess, "OK", id
		s.log.Info("kvol job done", "rowkey", j.Rowkey, "vdi", id, "took", j.End.Sub(j.Start).Round(time.Millisecond))
	}
	if err := s.save(j); err != nil {
		s.log.Error("kvol job", "rowkey", j.Rowkey, "err", err)
	}
}
