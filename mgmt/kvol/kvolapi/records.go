package kvolapi

// Backup is a row of list: one backup zone of the vPool asked about.
// cluster_ip is the backup daemon's API host, svm_ip its NBD host,
// svm_name its node name, name the vPool there.
type Backup struct {
	ClusterIP string `json:"cluster_ip"`
	Name      string `json:"name"`
	Seq       int    `json:"seq"`
	SVMIP     string `json:"svm_ip"`
	SVMName   string `json:"svm_name"`
	ZoneID    string `json:"zone_id"`
}

// Backups is list's answer.
type Backups struct {
	Backup []Backup `json:"backup"`
}

// Empty: nothing to answer (204).
func (b Backups) Empty() bool { return len(b.Backup) == 0 }

// BackupDetail is a row of show. A path is an NBD URI: a VDI of the vPool
// is exported as the path followed by its uuid.
type BackupDetail struct {
	DstPath      string `json:"dst-path"`
	DstSVMName   string `json:"dst-svm-name"`
	DstZone      string `json:"dst-zone"`
	SrcPath      string `json:"src-path"`
	SrcSVMName   string `json:"src-svm-name"`
	SrcVolTypeID string `json:"src-vol-type-id"`
	SrcZone      string `json:"src-zone"`
	Status       string `json:"status"` // the relation's: initializing, active, lagging, paused, broken
	Seq          int    `json:"seq"`
	Reason       string `json:"reason,omitempty"` // why it is broken or lagging
}

// BackupDetails is show's answer.
type BackupDetails struct {
	BackupDetail []BackupDetail `json:"backup-detail"`
}

// Empty: nothing to answer (204).
func (b BackupDetails) Empty() bool { return len(b.BackupDetail) == 0 }

// Queued is create's and recovery's answer.
type Queued struct {
	Message string `json:"message"`
	Rowkey  int64  `json:"rowkey"`
}

// Job states.
const (
	StatusPending = "PENDING"
	StatusRunning = "RUNNING"
	StatusSuccess = "SUCCESS"
	StatusFailed  = "FAILED"
)

// TimeLayout is how jobs show times (UTC).
const TimeLayout = "2006-01-02 15:04:05"

// Job is a row of createlist and recoverylist. src is the backup zone the
// volume was made from, org the zone the snapshot or volume came from.
type Job struct {
	Rowkey        int64  `json:"rowkey"`
	CreateEnd     string `json:"create_end"`
	CreateStart   string `json:"create_start"`
	DstSVMName    string `json:"dst_svm_name"`
	DstZoneID     string `json:"dst_zone_id"`
	NewVolumeID   string `json:"new_volume_id"`
	OrgSnapshotID string `json:"org_snapshot_id,omitempty"`
	OrgVolumeID   string `json:"org_volume_id,omitempty"`
	OrgZoneID     string `json:"org_zone_id"`
	ResultMsg     string `json:"result_msg"`
	SrcSVMName    string `json:"src_svm_name"`
	SrcZoneID     string `json:"src_zone_id"`
	Status        string `json:"status"`
}

// Jobs is createlist's and recoverylist's answer.
type Jobs struct {
	Clist []Job `json:"clist"`
}

// Empty: nothing to answer (204).
func (j Jobs) Empty() bool { return len(j.Clist) == 0 }
