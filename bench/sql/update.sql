\set k random(1, 10000)
UPDATE pgb SET v = v + 1 WHERE k = :k;
