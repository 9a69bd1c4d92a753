// The contract between the engine and the sidebar: what workbench/session_info.py `describe()` returns.
// Keep it in step with that file (tests/test_session_info.py checks the keys the sidebar reads).

/** One adapter of a workbench session. */
export interface IAdapterInfo {
  name: string;
  /** the rank, or "lo..hi" when modules differ */
  rank: number | string;
  ranks: number[];
  /** module name suffixes it targets (q_proj, v_proj, ...) */
  targets: string[];
  modules: number;
  layers: number;
  parameters: number;
  bytes: number;
  scaling: string;
  /** how it was made (method, tasks, steps, sources ...), JSON-safe */
  lineage: { [key: string]: unknown };
  /** one line of the lineage: "train_lora on topic (80 steps)" */
  made_by: string;
  /** the tasks it was trained on (for a merge: its sources' too), computed by the engine */
  tasks: string[];
  /** whether the lab's forward applies it now */
  active: boolean;
}

/** One router of a workbench session. */
export interface IRouterInfo {
  name: string;
  mechanism: string;
  /** "bank" (routes over the lab's adapters), "linear" or "block" (where it acts) */
  kind: string;
  modules: number;
  parameters: number;
  params: { [key: string]: unknown };
  /** its last training run's record (tasks, steps, ...), or null */
  trained: { [key: string]: unknown } | null;
  /** the routing-context keys it reads (task_labels, token_types, prompt_scale, ...) */
  needs: string[];
  /** export_router makes it static exactly, without prompts */
  exact_export: boolean;
  /** what the sidebar offers for it (ids of ROUTER_ACTIONS), computed by the engine */
  actions: string[];
  active: boolean;
}

/** One Workbench object in the kernel (bound to one or more names). */
export interface ISessionInfo {
  variables: string[];
  base: { name: string; class: string; fingerprint: string; parameters: number; device: string };
  active: string[];
  adapters: IAdapterInfo[];
  routers: IRouterInfo[];
}

/** The whole reply; `null` from the kernel means workbench is not even imported there. */
export interface IWorkbenchInfo {
  version: number;
  sessions: ISessionInfo[];
}
