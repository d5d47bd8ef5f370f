package api

import (
	"net/http"
	"regexp"
)

// NoArgs is the argument struct of calls that take none.
type NoArgs struct{}

// TaskRef names one task.
type TaskRef struct {
	UUID string `path:"uuid" doc:"the task"`
}

// TaskListArgs page a task list.
type TaskListArgs struct {
	Status string `query:"status" doc:"only tasks in this status"`
	PageArgs
}

// Validate checks the status.
func (a TaskListArgs) Validate() *Error {
	if a.Status != "" {
		if e := checkEnum("status", a.Status, []string{TaskPending, TaskSuccess, TaskFailure, TaskCancelled}); e != nil {
			return e
		}
	}
	return a.PageArgs.Validate()
}

// UserListArgs page a user list.
type UserListArgs struct {
	PageArgs
}

// UserRef names one user.
type UserRef struct {
	Username string `path:"username" doc:"the user"`
}

// UserCreateArgs create a user.
type UserCreateArgs struct {
	Username string `json:"username" required:"true" doc:"letters, digits, . _ - @ (1 to 64)"`
	Password string `json:"password" required:"true" doc:"8 to 72 bytes"`
	Role     string `json:"role" required:"true" doc:"read-only, vm-operator, vm-admin, vm-power-admin, pool-operator or pool-admin"`
}

var usernameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// Validate checks the fields.
func (a UserCreateArgs) Validate() *Error {
	if !usernameRE.MatchString(a.Username) {
		return InvalidValue("username", a.Username, "must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
	}
	if e := CheckPassword(a.Password); e != nil {
		return e
	}
	if _, err := ParseRole(a.Role); err != nil {
		return InvalidValue("role", a.Role, "%v", err)
	}
	return nil
}

// CheckPassword enforces bcrypt's 72-byte limit and a floor.
func CheckPassword(p string) *Error {
	if len(p) < 8 || len(p) > 72 {
		return InvalidValue("password", "(hidden)", "must be 8 to 72 bytes, got %d", len(p))
	}
	return nil
}

// UserUpdateArgs change a user's password or role.
type UserUpdateArgs struct {
	Username string  `path:"username" doc:"the user"`
	Password *string `json:"password" doc:"new password, 8 to 72 bytes"`
	Role     *string `json:"role" doc:"new role"`
}

// Validate checks what is given.
func (a UserUpdateArgs) Validate() *Error {
	if a.Password == nil && a.Role == nil {
		return BadRequest(CodeInvalidValue, []string{"password", ""}, "give password, role or both")
	}
	if a.Password != nil {
		if e := CheckPassword(*a.Password); e != nil {
			return e
		}
	}
	if a.Role != nil {
		if _, err := ParseRole(*a.Role); err != nil {
			return InvalidValue("role", *a.Role, "%v", err)
		}
	}
	return nil
}

// Session, user and task calls.
var (
	TokenCreate = declare[NoArgs](RPC{Class: "session", Call: "login", Methods: []string{http.MethodPost, http.MethodGet},
		Path: "/api/token", Role: ReadOnly, Auth: AuthPassword, XenAPI: []string{"login_with_password"},
		Summary: "Exchange Basic user:password for a token (valid --token-ttl, 24 h by default; revocable).", Returns: "token, expires_at, role, username"})
	TokenDelete = declare[NoArgs](RPC{Class: "session", Call: "logout", Methods: []string{http.MethodDelete},
		Path: "/api/token", Role: ReadOnly, XenAPI: []string{"logout"}, Status: http.StatusNoContent,
		Summary: "Revoke the token this call carries.", Returns: "nothing (204)"})

	UserList = declare[UserListArgs](RPC{Class: "user", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/users", Role: PoolAdmin, Summary: "List users.", Returns: "a list of users"})
	UserGet = declare[UserRef](RPC{Class: "user", Call: "get", Methods: []string{http.MethodGet},
		Path: "/api/users/{username}", Role: PoolAdmin, Summary: "Read one user.", Returns: "the user"})
	UserCreate = declare[UserCreateArgs](RPC{Class: "user", Call: "create", Path: "/api/users", Role: PoolAdmin,
		Status: http.StatusCreated, Summary: "Create a user with a role.", Returns: "the new user"})
	UserUpdate = declare[UserUpdateArgs](RPC{Class: "user", Call: "update", Methods: []string{http.MethodPatch},
		Path: "/api/users/{username}", Role: PoolAdmin,
		Summary: "Change a user's password or role. A new password revokes the user's tokens.", Returns: "the user"})
	UserDelete = declare[UserRef](RPC{Class: "user", Call: "delete", Methods: []string{http.MethodDelete},
		Path: "/api/users/{username}", Role: PoolAdmin, Status: http.StatusNoContent,
		Summary: "Delete a user and revoke its tokens (not the last pool-admin).", Returns: "nothing (204)"})

	TaskList = declare[TaskListArgs](RPC{Class: "task", Call: "list", Methods: []string{http.MethodGet},
		Path: "/api/tasks", Role: ReadOnly, XenAPI: []string{"get_all_records"},
		Summary: "List tasks, newest first.", Returns: "a list of tasks"})
	TaskGet = declare[TaskRef](RPC{Class: "task", Call: "get", Methods: []string{http.MethodGet},
		Path: "/api/tasks/{uuid}", Role: ReadOnly, XenAPI: []string{"get_record"},
		Summary: "Read one task: status, progress, result, error.", Returns: "the task"})
	TaskCancel = declare[TaskRef](RPC{Class: "task", Call: "cancel", Path: "/api/tasks/{uuid}/cancel",
		Role: ReadOnly, XenAPI: []string{"cancel"},
		Summary: "Cancel a pending task (your own, or any with pool-operator). What it made is removed.",
		Returns: "the task"})
)
