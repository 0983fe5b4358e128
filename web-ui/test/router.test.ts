import { describe, expect, it } from 'vitest';
import { hashFor, parseHash } from '../src/lib/router';
import { fmtDuration, fmtBytes } from '../src/lib/time';
import { query } from '../src/api';

describe('routing and formatting', () => {
  it('parses and builds hashes', () => {
    const r = parseHash('#/review?camera=lobby,gate&id=x');
    expect(r.path).toBe('/review');
    expect(r.params.get('camera')).toBe('lobby,gate');
    expect(parseHash('').path).toBe('/');
    expect(hashFor('/wall', { focus: 'yard', x: undefined })).toBe('#/wall?focus=yard');
  });

  it('builds API queries, skipping empty values', () => {
    expect(query({ cameras: ['a', 'b'], labels: [], alert: true, after: undefined, limit: 50 })).toBe(
      '?cameras=a%2Cb&alert=true&limit=50',
    );
    expect(query({})).toBe('');
  });

  it('formats durations and sizes', () => {
    expect(fmtDuration(4200)).toBe('4.2 s');
    expect(fmtDuration(185000)).toBe('3 min 05 s');
    expect(fmtBytes(1_500_000)).toBe('1.5 MB');
  });
});
