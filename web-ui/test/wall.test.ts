import { describe, expect, it } from 'vitest';
import type { StreamStatus } from '../src/api';
import { gridOf, streamFor } from '../src/lib/wall';

const st = (camera: string, stream: string, roles: StreamStatus['roles']): StreamStatus =>
  ({ camera, stream, roles, url: '', state: 'streaming', reconnects: 0, frames: 0, dropped_frames: 0 }) as StreamStatus;

describe('wall', () => {
  it('lays tiles out in near-square grids', () => {
    expect(gridOf(1)).toEqual({ cols: 1, rows: 1 });
    expect(gridOf(4)).toEqual({ cols: 2, rows: 2 });
    expect(gridOf(9)).toEqual({ cols: 3, rows: 3 });
    expect(gridOf(64)).toEqual({ cols: 8, rows: 8 });
    expect(gridOf(5)).toEqual({ cols: 3, rows: 2 });
  });

  it('picks the stream the server plays: grid tiles the sub stream, focus the main one', () => {
    const list = [st('lobby', 'main', ['record', 'live']), st('lobby', 'sub', ['grid']), st('gate', 'main', ['live', 'grid'])];
    expect(streamFor(list, 'lobby', 'grid')?.stream).toBe('sub');
    expect(streamFor(list, 'lobby', 'focus')?.stream).toBe('main');
    expect(streamFor(list, 'gate', 'grid')?.stream).toBe('main');
    expect(streamFor(list, 'nope', 'grid')).toBeUndefined();
  });
});
