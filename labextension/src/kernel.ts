// Asking the notebook's own kernel which workbench sessions it holds: one silent execute request
// whose user expression (evaluated after an empty cell, no output, no history, no execution count)
// returns workbench/session_info.py's SessionInfo as application/json.

import { Kernel, KernelMessage } from '@jupyterlab/services';

import { IWorkbenchInfo } from './tokens';

/** Must equal workbench.session_info.EXPRESSION (tests/test_session_info.py checks it). */
export const EXPRESSION =
  "__import__('workbench.session_info').session_info.SessionInfo() " +
  "if 'workbench' in __import__('sys').modules else None";

/** Thrown when the kernel answered but the expression failed there. */
export class KernelQueryError extends Error {}

/**
 * The workbench sessions in `kernel`, or `null` when `workbench` is not imported in it.
 */
export async function querySessions(kernel: Kernel.IKernelConnection): Promise<IWorkbenchInfo | null> {
  const future = kernel.requestExecute(
    { code: '', silent: true, store_history: false, user_expressions: { lw: EXPRESSION }, allow_stdin: false },
    true
  );
  const reply = (await future.done) as KernelMessage.IExecuteReplyMsg;
  const content = reply.content as KernelMessage.IExecuteReply & {
    user_expressions?: { [key: string]: any };
  };
  if (content.status !== 'ok') {
    throw new KernelQueryError(`the kernel did not answer (${content.status})`);
  }
  const result = content.user_expressions?.lw;
  if (!result) {
    throw new KernelQueryError('the kernel returned no user expression (is it an IPython kernel?)');
  }
  if (result.status !== 'ok') {
    throw new KernelQueryError(`${result.ename}: ${result.evalue}`);
  }
  const json = result.data?.['application/json'];
  return json ? (json as IWorkbenchInfo) : null;
}
