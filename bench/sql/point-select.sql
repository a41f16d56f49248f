\set k random(1, 10000)
SELECT v FROM pgb WHERE k = :k;
